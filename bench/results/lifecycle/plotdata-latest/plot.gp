set terminal pngcairo size 1400,1440 font 'DejaVu Sans,10'
set output '/work/meas/lifecycle/latest.png'
set multiplot layout 4,2 title 'slacker vs overlay2 (medians, log scale)'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.9 border -1
set boxwidth 0.9
set logscale y
set grid ytics
set key tmargin horizontal
set xtics scale 0
set yrange [0.5:*]
set title 'create'
set ylabel 'ms'
plot '/work/meas/lifecycle/plotdata-latest/create_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
set title 'docker run --rm'
set ylabel 'ms'
plot '/work/meas/lifecycle/plotdata-latest/run_rm_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
set title 'start'
set ylabel 'ms'
plot '/work/meas/lifecycle/plotdata-latest/start_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
set title 'start, stopped container'
set ylabel 'ms'
plot '/work/meas/lifecycle/plotdata-latest/restart_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
set title 'stop'
set ylabel 'ms'
plot '/work/meas/lifecycle/plotdata-latest/stop_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
set title 'rm'
set ylabel 'ms'
plot '/work/meas/lifecycle/plotdata-latest/rm_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
set title 'commit of a one-file change'
set ylabel 'ms'
plot '/work/meas/lifecycle/plotdata-latest/commit_ms.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', '' using 3 title 'slacker' lc rgb '#1b9e77'
unset multiplot
