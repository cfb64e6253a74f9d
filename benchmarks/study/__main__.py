from benchmarks.study.run import main

main()
