from benchmarks.ablation.run import main

main()
