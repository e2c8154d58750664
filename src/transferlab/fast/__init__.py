"""Real-time style transfer: feed-forward networks trained per style with perceptual losses."""
