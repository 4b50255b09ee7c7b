set terminal pngcairo size 1400,1800 font 'DejaVu Sans,10'
set output '/work/main/bench/results/latest-topologies.png'
set multiplot layout 5,2 title 'slacker vs overlay2 (medians, log scale) - per topology'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.9 border -1
set boxwidth 0.9
set logscale y
set grid ytics
set key tmargin horizontal
set xtics scale 0
set yrange [0.5:*]
set title 'push'
set ylabel 'ms'
plot '/work/main/bench/results/plotdata-topologies/push_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
set title 'push floor'
set ylabel 'ms'
plot '/work/main/bench/results/plotdata-topologies/floor_push_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
set title 'pull'
set ylabel 'ms'
plot '/work/main/bench/results/plotdata-topologies/pull_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
set title 'pull floor'
set ylabel 'ms'
plot '/work/main/bench/results/plotdata-topologies/floor_pull_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
set title 'run (cold)'
set ylabel 'ms'
plot '/work/main/bench/results/plotdata-topologies/run_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
set title 'deploy'
set ylabel 'ms'
plot '/work/main/bench/results/plotdata-topologies/deploy_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
set title 'dev cycle'
set ylabel 'ms'
plot '/work/main/bench/results/plotdata-topologies/dev_cycle_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
set title 'dev cycle, fresh'
set ylabel 'ms'
plot '/work/main/bench/results/plotdata-topologies/dev_fresh_cycle_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
set title 'big-change dev cycle'
set ylabel 'ms'
plot '/work/main/bench/results/plotdata-topologies/big_dev_cycle_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
unset multiplot
