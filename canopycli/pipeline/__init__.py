"""The data's journey: read -> normalize -> de-duplicate -> batch -> stage (push's rows, sync's diff) -> run -> report."""
