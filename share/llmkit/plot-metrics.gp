# Draws a training run's loss curve from its metrics.jsonl (llm-pretrain) into a PNG.
# Usage: gnuplot -e "metrics='runs/r1/metrics.jsonl'; output='runs/r1/loss.png'" plot-metrics.gp
# (llm-pretrain --plot RUN does this). grep picks the step lines or the evaluation lines and sed
# turns them into words: {"step":3,"loss":7.1,"lr":0.001,...} reads as "step 3 loss 7.1 lr
# 0.001 ...", {"step":4,"val_loss":6.9} as "step 4 val_loss 6.9".
if (!exists("metrics")) metrics = "metrics.jsonl"
if (!exists("output")) output = "loss.png"
words = " | sed -e 's/[{}\"]//g' -e 's/[,:]/ /g'"
train = "< grep '\"loss\"' '".metrics."'".words
val = "< grep '\"val_loss\"' '".metrics."'".words
set terminal pngcairo size 900,520 noenhanced
set output output
set title "llm-pretrain: ".metrics
set xlabel "step"
set ylabel "loss (nats per token)"
set y2label "learning rate"
set y2tics
set ytics nomirror
set grid
set key top right
plot train using 2:4 with lines lw 1.5 lc rgb "#1f77b4" title "train loss", \
     val using 2:4 with linespoints pt 7 ps 0.8 lc rgb "#d62728" title "val loss", \
     train using 2:6 axes x1y2 with lines dt 2 lc rgb "#7f7f7f" title "lr"
