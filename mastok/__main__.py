from mastok.cli import main

main()
