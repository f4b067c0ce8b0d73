"""The far side: delivering batches to Deployteq (retries, concurrency, halting), the webhook transport, the daily quota."""
