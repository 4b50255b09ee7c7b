set terminal pngcairo size 1400,1800 font 'DejaVu Sans,10'
set output '/work/main/bench/results/latest.png'
set multiplot layout 5,2 title 'slacker vs overlay2 (medians, log scale) - 2026-11-23 15:43 UTC - full'
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
plot '/work/main/bench/results/plotdata/push_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
set title 'pull'
set ylabel 'ms'
plot '/work/main/bench/results/plotdata/pull_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
set title 'create'
set ylabel 'ms'
plot '/work/main/bench/results/plotdata/create_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
set title 'run-to-ready (cold)'
set ylabel 'ms'
plot '/work/main/bench/results/plotdata/run_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
set title 'deploy = pull+run'
set ylabel 'ms'
plot '/work/main/bench/results/plotdata/deploy_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
set title 'dev cycle'
set ylabel 'ms'
plot '/work/main/bench/results/plotdata/dev_cycle_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
set title 'dev cycle, fresh worker'
set ylabel 'ms'
plot '/work/main/bench/results/plotdata/dev_fresh_cycle_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
set title 'run-to-ready (warm)'
set ylabel 'ms'
plot '/work/main/bench/results/plotdata/warm_run_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
set title 'startup read (MiB)'
set ylabel 'MiB'
set yrange [0.01:*]
plot '/work/main/bench/results/plotdata/read_bytes.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
unset multiplot
