"""Task queues: durable task records, the task service that runs them on Ray, and the client API."""
