from vascalc.cli import main

main()
