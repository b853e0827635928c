"""What it takes to run a user's isvc as it is: its own virtualenv (`venvs`), a launcher that keeps
the stock model server on loopback (`launch`, run by the isvc's own Python), and the offline
translation of its Blubber image recipe (`blubber`)."""
