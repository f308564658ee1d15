from kbootstrap.cli.main import main

main()
