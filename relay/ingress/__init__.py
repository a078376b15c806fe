"""The ingress: the HTTP adapter that verifies a webhook, records it and answers the sender."""
