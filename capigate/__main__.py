from capigate.cli import main

main()
