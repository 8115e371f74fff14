"""An example model service: loads a model verified with `modelward.load`, generates on CPU and
reports each request as an OpenTelemetry GenAI span (OTLP JSON) to a modelward server or a file."""
