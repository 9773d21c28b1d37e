"""Observability export: OpenTelemetry traces (OTLP) and Prometheus metrics."""
