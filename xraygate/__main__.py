from xraygate.cli import main

main()
