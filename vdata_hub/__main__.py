from vdata_hub.cli import main

main()
