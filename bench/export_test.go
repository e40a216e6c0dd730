package bench

// Validate exposes Config.validate, after the defaults Run fills in, to the tests.
func Validate(c Config) error { return c.withDefaults().validate() }
