"""Work spread over a Ray cluster: the generic plumbing, the image job, the video job."""
