"""`ml-sandbox load`: an isvc's locust load test against a target's ingress, compared with a
baseline, plotted. The CLI command is `sandbox.commands.load`."""
