"""The run worker: what each kind of event calls for (model calls, agents, tools, remote
tasks, extraction, run-level model requests, child runs, chat threads), and the loop
over a batch of events (`worker.run_nodes`)."""
