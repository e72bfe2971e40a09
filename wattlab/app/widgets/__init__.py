"""The console's own widgets: charts drawn in braille, the navigation bar and dialogs."""
