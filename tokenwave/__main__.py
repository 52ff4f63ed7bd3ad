from tokenwave.cli import main

main()
