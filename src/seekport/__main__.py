from seekport.cli.main import main

main()
