# Water-level sensing: ultrasonic rangers, DS18B20 temperature, battery voltage.
