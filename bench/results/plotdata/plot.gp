set terminal pngcairo size 1400,1440 font 'DejaVu Sans,10'
set output 'bench/results/latest.png'
set multiplot layout 4,2 title 'slacker vs overlay2 (medians, log scale) - 2026-11-23 11:25 UTC - quick'
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
plot 'bench/results/plotdata/push_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
set title 'pull'
set ylabel 'ms'
plot 'bench/results/plotdata/pull_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
set title 'create'
set ylabel 'ms'
plot 'bench/results/plotdata/create_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
set title 'run-to-ready (cold)'
set ylabel 'ms'
plot 'bench/results/plotdata/run_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
set title 'deploy = pull+run'
set ylabel 'ms'
plot 'bench/results/plotdata/deploy_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
set title 'dev cycle'
set ylabel 'ms'
plot 'bench/results/plotdata/dev_cycle_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
set title 'run-to-ready (warm)'
set ylabel 'ms'
plot 'bench/results/plotdata/warm_run_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
set title 'startup read (MiB)'
set ylabel 'MiB'
set yrange [0.01:*]
plot 'bench/results/plotdata/read_bytes.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
unset multiplot
