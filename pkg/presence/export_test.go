package presence

// ParseInfo is parseInfo, for the tests.
var ParseInfo = parseInfo
