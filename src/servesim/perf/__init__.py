"""The cost model: batch shape -> iteration time (op by op), and the memory plan."""
