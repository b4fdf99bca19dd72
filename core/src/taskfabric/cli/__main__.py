from taskfabric.cli import main

main()
