"""The instrument behind `socialmesh bench`: an open-loop load generator with
HdrHistogram percentiles (`loadgen`), the workloads it drives (`workloads`), the
data sets they run on (`dataset`) and the report: table, JSON, plots (`report`)."""
