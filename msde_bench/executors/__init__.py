"""Where a sweep's cells run. Each executor module is imported only when chosen
(`msde-bench sweep --executor NAME`); every one runs `task.execute` once per cell."""
