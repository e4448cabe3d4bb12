# Displays: TM1637 7-segment, MAX7219 dot-matrix chain, SSD1306 OLED, and the
# text adapters (text.py) that give each the roles' show(lines, chime) API.
