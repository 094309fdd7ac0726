#!/bin/sh
# Test helper: exits at once with code ${1:-1} (a crash loop under autorestart).
echo "crashing pid=$$"
exit "${1:-1}"
