# Timing helpers of the bench scripts. Sourced.
# now_ms: milliseconds since the epoch; timed CMD...: runs CMD, prints its wall time in ms;
# median: the median of the numbers on stdin.
now_ms() { date +%s%N | awk '{printf "%.3f", $1 / 1000000}'; }
timed() { local t0; t0=$(now_ms); "$@"; awk -v a="$t0" -v b="$(now_ms)" 'BEGIN{printf "%.1f\n", b - a}'; }
median() { sort -n | awk '{v[NR]=$1} END{ if (NR%2) print v[(NR+1)/2]; else printf "%.1f\n", (v[NR/2]+v[NR/2+1])/2 }'; }
