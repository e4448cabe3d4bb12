# Thermal ticket printer speaking ESC/POS over a UART.
