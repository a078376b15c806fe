"""The protocol, free of I/O: what an event and an action are, how a sender's signature is checked,
how a mapping turns an event into actions, and how untrusted text is fenced."""
