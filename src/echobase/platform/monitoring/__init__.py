"""Dashboards and alerts, described once and rendered for each consumer: the rules file and
console template the durable layer's Prometheus loads, and the Grafana dashboard and rules
YAML shipped for teams that run their own. Everything here is pure; ``durable/layer.py``
writes what it renders and ``cli/bluegreen.py`` reads the firing alerts."""
