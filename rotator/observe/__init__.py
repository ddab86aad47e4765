"""What operators see: the one read service (`insights`), Prometheus metrics (`metrics`)
and webhook notices (`notify`)."""
