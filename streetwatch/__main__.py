from streetwatch.cli import main

main()
