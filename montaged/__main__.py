from montaged.cli import main

main()
