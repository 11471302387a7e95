from pagemill_tools.startup import main

main()
