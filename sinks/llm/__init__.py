"""The LLM client: the one place practiceflow sends a prompt over the network (``client.py``)."""
