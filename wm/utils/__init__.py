"""Small helpers with no project dependencies: seeding, frame strips."""
