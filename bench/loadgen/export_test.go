package loadgen

import "github.com/tokenvault/tokenvault/bench/echo"

var echoMetricsHandler = echo.MetricsHandler
