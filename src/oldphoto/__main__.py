from oldphoto.cli.launch import main

main()
