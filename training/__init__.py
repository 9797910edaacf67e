"""Fine-tuning: job spec, dataset preparation, the trainer entry point and the job manager."""
