"""Where engine work runs: jobs, executors, the killable process pool, deadlines, the allocator."""
