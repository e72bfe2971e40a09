"""One module per console screen: Live, Launch, History (+ run detail), Compare, Pareto, SQL."""
