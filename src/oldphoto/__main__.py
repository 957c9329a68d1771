from oldphoto.cli.app import main

main()
