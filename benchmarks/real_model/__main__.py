from benchmarks.real_model.run import main

main()
