"""Observability: what the service and Redis do for each feature, as Prometheus metrics
(`metrics`, served by `web`) and as OpenTelemetry traces (`traces`), whichever the service
was generated with. `main.py` lists their features."""
