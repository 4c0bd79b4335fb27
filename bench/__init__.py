"""capigate benchmark harness: see bench/README.md."""
