"""Long videos: sliding-window prediction, spotting intervals, MEGC spotting metrics."""
